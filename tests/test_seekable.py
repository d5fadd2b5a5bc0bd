"""Format version 3 with a real model: the compact header's cost, block sequence numbers, byte
ranges through the block index, seeking in llmzip.open, older versions still decoding, and the
command line's --range and --block-size."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from conftest import container_frames
import llmzip
from llmzip import Codec, FormatError, inspect
from llmzip.cli import main
from llmzip.container import header_bytes, read_index
from llmzip.filters import to_line_feeds, wrap_for

BLOCK = 400


@pytest.fixture(scope="module")
def codec(llama):
    return Codec(llama, context=64)  # the default engine: portable


@pytest.fixture(scope="module")
def packed(codec, alice):
    """Several blocks of text (cut after newlines, so of uneven sizes) and the file."""
    data = alice[:1800]
    out = io.BytesIO()
    stats = codec.compress_stream(io.BytesIO(data), out, block_bytes=BLOCK)
    assert stats.blocks >= 4
    return data, out.getvalue()


class _Counting:
    """Counts the blocks the codec decodes."""

    def __init__(self, codec, monkeypatch):
        self.count = 0
        decode = codec._decode_block

        def counted(*args, **kwargs):
            self.count += 1
            return decode(*args, **kwargs)

        monkeypatch.setattr(codec, "_decode_block", counted)


# ---------------------------------------------------------------------------------------------
# Size: the budget


def test_one_kib_costs_at_most_32_bytes_over_its_coded_stream(llama, alice):
    """Default settings (portable engine, context 512): header, framing, index and footer of a
    one-block file, with LF line ends and with CRLF ones (coded as LF, plus their count). The exact
    count is pinned so that any growth is a decision. The text is hard-wrapped, so its block also
    holds a wrap record: side data (the layout of its lines, which the model's stream no longer
    codes), counted with the side channel."""
    codec = Codec(llama)
    assert b"\r\n" in alice[:1024] and b"\n" not in alice[:1024].replace(b"\r\n", b"")  # all CRLF
    for text, line_ends, expected in ((alice[:1024].replace(b"\r\n", b"\n"), 0, 31),
                                      (alice[:1024], alice[:1024].count(b"\n"), 32)):
        blob, stats = codec.compress_with_stats(text)
        info = inspect(blob)
        (block,) = info.block_list
        wrap = wrap_for(to_line_feeds(text)).record_bytes()
        assert block.wrap_width and block.wrap_bytes == wrap  # hard-wrapped lines: the record is side data
        assert info.blocks == 1 and info.side_bytes == wrap  # all text: the side channel itself costs nothing
        assert info.block_list[0].line_ends == line_ends
        overhead = len(blob) - stats.stream_bytes - wrap
        assert overhead == info.overhead_bytes == stats.header_bytes
        assert overhead <= 32
        # magic 4, version 1, header length 1, fingerprint 4, flags 2 (the mixer's is the eighth bit),
        # BOS 1 (the tiny model's is 0), mixer 1 (adapt-v2, the default level's), CRC-16 2;
        # block length 2, sequence number 1, raw length 2, CRC-32 4, token count 2, side length 1,
        # the line-end count 1 where there is one (below 128); end tag 1, index 1, footer 1
        assert info.header_size == 16 and len(header_bytes(codec._header())) == 16
        assert info.tail_size == 3
        assert overhead == expected, info
        assert codec.decompress(blob) == text


# ---------------------------------------------------------------------------------------------
# Sequence numbers


def _decode_recording(codec, blob: bytes) -> tuple[list[bytes], Exception | None]:
    written: list[bytes] = []
    try:
        for piece in codec.iter_decompress(io.BytesIO(blob)):
            written.append(piece)
    except FormatError as exc:
        return written, exc
    return written, None


@pytest.mark.parametrize("order,good", [((0, 2, 3), 1), ((0, 1, 1, 2), 2), ((0, 2, 1, 3), 1), ((1, 2, 3), 0)])
def test_removed_repeated_or_reordered_blocks_are_refused_before_output(codec, packed, monkeypatch, order, good):
    """Only the blocks before the fault come out, and the misplaced block is never decoded."""
    data, blob = packed
    head, frames, end = container_frames(blob)
    pieces = list(codec.iter_decompress(io.BytesIO(blob)))
    counter = _Counting(codec, monkeypatch)
    written, error = _decode_recording(codec, head + b"".join(frames[k] for k in order) + end)
    assert error is not None and "removed, repeated or reordered" in str(error)
    assert written == pieces[:good] and counter.count == good


# ---------------------------------------------------------------------------------------------
# Ranges


@pytest.mark.parametrize("start,end", [(0, 10), (5, 1800), (399, 401), (1000, 1300), (1799, 1800), (0, None),
                                       (1500, None), (1800, None), (2000, 3000), (700, 700)])
def test_ranges_decode_only_their_blocks(codec, packed, monkeypatch, start, end):
    data, blob = packed
    index = read_index(io.BytesIO(blob))
    stop = len(data) if end is None else min(end, len(data))
    needed = {index.locate(p) for p in range(start, stop)}
    counter = _Counting(codec, monkeypatch)
    assert codec.decompress_range(blob, start, end) == data[start:end]
    assert counter.count == len(needed)


def test_a_range_never_reads_blocks_it_does_not_need(codec, packed):
    """Damage every stream of the first block: the whole file fails, a later range still decodes."""
    data, blob = packed
    head, frames, end = container_frames(blob)
    damaged_first = frames[0][:-8] + bytes(b ^ 0x5A for b in frames[0][-8:])
    damaged = head + damaged_first + b"".join(frames[1:]) + end
    with pytest.raises(FormatError):
        codec.decompress(damaged)
    index = read_index(io.BytesIO(damaged))
    start = index.raw_starts[2]
    assert codec.decompress_range(damaged, start, start + 50) == data[start : start + 50]


def test_ranges_from_a_pipe_skip_blocks_without_decoding(codec, packed, monkeypatch):
    data, blob = packed

    class Pipe(io.RawIOBase):
        def __init__(self, payload: bytes):
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self._inner.read(n)

    index = read_index(io.BytesIO(blob))
    start = index.raw_starts[2] + 3
    counter = _Counting(codec, monkeypatch)
    got = b"".join(codec.iter_decompress_range(Pipe(blob), start, start + 20))
    assert got == data[start : start + 20] and counter.count == 1


def test_invalid_ranges_are_refused(codec, packed):
    _, blob = packed
    for start, end in ((-1, 5), (10, 5)):
        with pytest.raises(ValueError):
            codec.decompress_range(blob, start, end)


# ---------------------------------------------------------------------------------------------
# Older versions


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_still_decode_and_seek(llama, alice, version, monkeypatch):
    """Files written as versions 1 and 2 (16- and 8-byte fingerprints, no sequence numbers, no
    index, a trailer with the total CRC-32) decode, and ranges and seeks fall back to reading in order."""
    data = alice[:900]
    # version 1 knew only the transformers engine, one stream per batch
    codec = (Codec(llama, context=32, batch=3, engine="transformers") if version == 1
             else Codec(llama, preset=1, context=64, mixer="none"))  # no carried context before 4, no mixer before 5
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, block_bytes=BLOCK, version=version)
    blob = out.getvalue()
    assert blob[4] == version and inspect(blob).header.version == version
    assert Codec(llama).decompress(blob) == data
    assert codec.decompress_range(blob, 450, 460) == data[450:460]
    with llmzip.open(io.BytesIO(blob), codec=codec) as f:
        f.seek(500)
        assert f.read(30) == data[500:530]
        f.seek(10)
        assert f.read(5) == data[10:15]
        assert f.seek(0, io.SEEK_END) == len(data) and f.read() == b""


def test_v2_total_checksum_is_still_checked(llama, alice):
    codec = Codec(llama, preset=1, context=64, mixer="none")
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(alice[:300]), out, version=2)
    blob = bytearray(out.getvalue())
    blob[-1] ^= 0x01  # the trailer's CRC-32
    with pytest.raises(llmzip.ChecksumError):
        codec.decompress(bytes(blob))


# ---------------------------------------------------------------------------------------------
# llmzip.open: seek and read


def test_seek_and_read_decode_only_the_block_needed(codec, packed, monkeypatch):
    data, blob = packed
    inside = read_index(io.BytesIO(blob)).raw_starts[2] + 5  # 20 bytes from here are in block 2
    counter = _Counting(codec, monkeypatch)
    with llmzip.open(io.BytesIO(blob), codec=codec) as f:
        assert f.seekable()
        assert f.seek(0, io.SEEK_END) == len(data) and counter.count == 0  # the index knows the size
        assert f.seek(inside) == inside and counter.count == 0  # seeking itself decodes nothing
        assert f.read(20) == data[inside : inside + 20] and counter.count == 1
        assert f.tell() == inside + 20
        assert f.seek(-inside - 20, io.SEEK_CUR) == 0
        assert f.read(3) == data[:3] and counter.count == 2
        f.seek(len(data) - 5)
        assert f.read() == data[-5:]
        f.seek(len(data) + 10)
        assert f.read() == b"" and f.tell() == len(data) + 10
        with pytest.raises(ValueError):
            f.seek(-1)
        f.seek(0)
        assert f.read() == data


def test_text_mode_seek_and_tell(codec, packed):
    data, blob = packed
    with llmzip.open(io.BytesIO(blob), "rt", codec=codec, encoding="utf-8") as f:
        f.readline()
        where = f.tell()
        line = f.readline()
        f.seek(0)
        f.seek(where)
        assert f.readline() == line


def test_a_stream_that_cannot_seek_reads_forward_only(codec, packed):
    data, blob = packed

    class Pipe(io.RawIOBase):
        def __init__(self):
            self._inner = io.BytesIO(blob)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._inner.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    with llmzip.open(Pipe(), codec=codec) as f:
        assert not f.seekable()
        f.seek(900)
        assert f.read(10) == data[900:910]
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)


def test_write_with_block_bytes(codec, alice, tmp_path):
    path = tmp_path / "b.llmz"
    with llmzip.open(path, "wb", codec=codec, block_bytes=300) as f:
        f.write(alice[:1000])
    info = inspect(path.read_bytes())
    assert info.blocks >= 3 and max(b.raw_len for b in info.block_list) <= 300


# ---------------------------------------------------------------------------------------------
# info


def test_inspect_lists_the_blocks(packed):
    data, blob = packed
    info = inspect(blob)
    blocks = info.block_list
    assert len(blocks) == info.blocks and blocks[0].offset == info.header_size
    assert all(a.offset + a.size == b.offset for a, b in zip(blocks, blocks[1:]))
    assert all(a.raw_start + a.raw_len == b.raw_start for a, b in zip(blocks, blocks[1:]))
    assert blocks[-1].offset + blocks[-1].size + info.tail_size == len(blob)
    assert sum(b.raw_len for b in blocks) == len(data) == info.original_bytes
    index = read_index(io.BytesIO(blob))
    assert list(index.offsets) == [b.offset for b in blocks] and list(index.sizes) == [b.size for b in blocks]


# ---------------------------------------------------------------------------------------------
# The command line


def _args(model_dir, *rest):
    return ["-q", "--model", str(model_dir), *rest]


@pytest.fixture()
def packed_file(llama_dir, alice, tmp_path):
    path = tmp_path / "alice.txt"
    path.write_bytes(alice[:1800])
    assert main(["compress", *_args(llama_dir, "--context", "64", "--block-size", "400", str(path))]) == 0
    return tmp_path / "alice.txt.llmz"


def test_cli_range_to_stdout_keeps_the_input(llama_dir, packed_file, alice, capfdbinary):
    capfdbinary.readouterr()
    assert main(["decompress", *_args(llama_dir, "--range", "1000:1100", str(packed_file))]) == 0
    assert capfdbinary.readouterr().out == alice[1000:1100]
    assert packed_file.exists() and not packed_file.with_name("alice.txt").exists()
    assert main(["decompress", *_args(llama_dir, "--range", "1700:", str(packed_file))]) == 0
    assert capfdbinary.readouterr().out == alice[1700:1800]
    out = packed_file.with_name("piece")
    assert main(["decompress", *_args(llama_dir, "--range", ":1K", "-o", str(out), str(packed_file))]) == 0
    assert out.read_bytes() == alice[:1024] and packed_file.exists()


def test_cli_range_from_standard_input(llama_dir, packed_file, alice):
    proc = subprocess.run([sys.executable, "-m", "llmzip.cli", "decompress", "--model", str(llama_dir),
                           "--range", "400:450"], input=packed_file.read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == alice[400:450]


def test_cli_block_size(llama_dir, alice, tmp_path):
    from llmzip.codec import split_blocks

    for size, size_bytes in (("1K", 1024), ("1k", 1024), ("1KiB", 1024), ("600", 600), ("1M", 1 << 20)):
        path = tmp_path / f"in-{size}"
        path.write_bytes(alice[:2000])
        assert main(["compress", *_args(llama_dir, "--context", "64", "--block-size", size, str(path))]) == 0
        lengths = [b.raw_len for b in inspect(path.with_name(path.name + ".llmz").read_bytes()).block_list]
        assert lengths == [len(b) for b in split_blocks(alice[:2000], size_bytes)], size


@pytest.mark.parametrize("option,value", [("--block-size", "0"), ("--block-size", "abc"), ("--block-size", "1X"),
                                          ("--block-size", "65M"), ("--block-size", "-5"), ("--block-size", "1.5M"),
                                          ("--range", "5"), ("--range", "10:5"), ("--range", "a:b"),
                                          ("--range", "1:2:3")])
def test_cli_bad_sizes_are_one_line_usage_errors(llama_dir, tmp_path, capsys, option, value):
    path = tmp_path / ("in.llmz" if option == "--range" else "in")
    path.write_bytes(b"x")
    command = "decompress" if option == "--range" else "compress"
    assert main([command, *_args(llama_dir, f"{option}={value}", str(path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmzip: ") and len(err.strip().splitlines()) == 1 and option in err


def test_cli_info_lists_blocks(llama_dir, packed_file, capsys):
    capsys.readouterr()
    assert main(["info", str(packed_file)]) == 0
    out = capsys.readouterr().out
    info = inspect(packed_file.read_bytes())
    assert "format      version 7" in out and "covered by the model fingerprint" in out
    assert "mixer       adapt-v2 (a logit bias learned while coding at a rate per token" in out
    assert info.header.model_fingerprint.hex() in out and "name not recorded" in out
    table = out[out.index("block  offset"):].splitlines()
    assert len(table) == 1 + info.blocks
    for line, block in zip(table[1:], info.block_list):
        assert line.split()[1:7] == [str(block.offset), str(block.size), str(block.raw_start), str(block.raw_len),
                                     str(block.line_ends),
                                     f"{block.wrap_width}/{block.wrap_exceptions}" if block.wrap_width else "-"]
