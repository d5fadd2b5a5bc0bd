"""Ray: blocks coded by a pool of actors give the single-process file byte for byte, decode in
parallel, survive a killed actor; `bench --ray` rows and reruns; the message without the extra.

One local Ray for the whole session (2 CPUs, no dashboard, no usage statistics), started only if
a test needs it; without Ray installed those tests are skipped, and the missing-extra test runs.
Every actor loads the tiny Llama from its saved folder, through the real loading code.
"""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmzip import Codec, Stats
from llmzip.cli import main

CONTEXT = 64
BLOCK = 512  # the first 3,000 bytes of alice_head.txt make 6 blocks (each cut after a line)
_SCRIPT = Path(sys.executable).with_name("llmzip")
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "llmzip.cli"]


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="class")
def pool(ray_session, llama_dir):
    """Two actors: the session's whole Ray, so the tests after TestPool (which start pools of their
    own) run once it is closed."""
    from llmzip.distributed import RayCodec

    with RayCodec(str(llama_dir), context=CONTEXT, workers=2) as codec:
        yield codec


@pytest.fixture(scope="module")
def text(alice) -> bytes:
    return alice[:3000]


@pytest.fixture(scope="module")
def single(llama, text):
    """The single-process file and its statistics."""
    return Codec(llama, context=CONTEXT).compress_with_stats(text, block_bytes=BLOCK)


class _Pipe(io.RawIOBase):
    """A source that cannot seek and returns at most 100 bytes per read, as a pipe may."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), 100, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class TestPool:
    """The library: one pool of two actors for these tests."""

    def test_compress_is_byte_identical(self, pool, single, text):
        reference, ref_stats = single
        seen = []
        blob, stats = pool.compress_with_stats(text, seen.append, block_bytes=BLOCK)
        assert blob == reference
        assert (stats.blocks, stats.original_bytes, stats.compressed_bytes) == (ref_stats.blocks, len(text), len(blob))
        assert stats.blocks >= 5 and stats.extra["ray"]["workers"] == 2
        for name in ("tokens", "text_bytes", "stream_bytes", "side_bytes", "header_bytes"):
            assert getattr(stats, name) == getattr(ref_stats, name), name
        assert stats.cross_entropy_bits == pytest.approx(ref_stats.cross_entropy_bits, rel=1e-9)
        done = [p.input_bytes for p in seen]
        assert done == sorted(done) and done[-1] == len(text)  # one count for the whole job, in bytes
        # From a pipe, read in small pieces: the same blocks are cut.
        out = io.BytesIO()
        pool.compress_stream(io.BufferedReader(_Pipe(text)), out, block_bytes=BLOCK)
        assert out.getvalue() == reference

    def test_parallel_decompress(self, pool, single, text):
        reference, ref_stats = single
        seen = []
        assert pool.decompress(reference, seen.append) == text  # blocks found through the index
        assert seen[-1].input_bytes == len(reference)
        assert pool.decompress_range(reference, 1000, 1200) == text[1000:1200]
        # From a pipe: read front to back, the blocks before the range skipped without decoding.
        stats = Stats()
        pieces = list(pool.iter_decompress_range(io.BufferedReader(_Pipe(reference)), 2990, None, None, stats))
        assert b"".join(pieces) == text[2990:]
        assert stats.compressed_bytes == len(reference) and stats.blocks == 1 < ref_stats.blocks

    def test_damaged_block_is_an_llmzip_error(self, pool, single):
        from llmzip import ChecksumError, FormatError

        damaged = bytearray(single[0])
        damaged[len(damaged) // 2] ^= 0x04  # inside a block's coded stream
        with pytest.raises((ChecksumError, FormatError)) as info:
            pool.decompress(bytes(damaged))
        assert "\n" not in str(info.value) and "Ray" not in type(info.value).__name__

    def test_killed_actor_is_replaced(self, pool, single, text, ray_session):
        """ray.kill on an actor mid-run: its block goes to another, the output is identical and whole."""
        reference, _ = single
        killed = []

        def kill_one(progress) -> None:
            if not killed and progress.input_bytes > 0:  # blocks are in flight
                killed.append(pool.pool.actors[0])
                ray_session.kill(killed[0])

        blob, stats = pool.compress_with_stats(text, kill_one, block_bytes=BLOCK)
        assert killed and blob == reference
        # The killed actor had a block, or was sent one before its death was known: either way
        # a block was sent again, and the pool has two live actors.
        assert stats.extra["ray"]["retried"] >= 1 and killed[0] not in pool.pool.actors
        assert len(pool.pool.actors) == 2


def test_cli_compress_in_a_fresh_process_is_quiet(tmp_path, llama_dir, text, single, ray_session):
    """The real command, which starts its own local Ray: the same file, nothing on stderr. The
    input follows --ray directly, where argparse takes it for the address."""
    (tmp_path / "in.txt").write_bytes(text)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([*CLI, "compress", "--ray", "in.txt", "-q", "-k", "--workers", "1", "--model",
                           str(llama_dir), "--context", str(CONTEXT), "--block-size", str(BLOCK)],
                          capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert (tmp_path / "in.txt.llmz").read_bytes() == single[0]


def test_cli_decompress(tmp_path, llama_dir, text, single, ray_session, capsys):
    (tmp_path / "in.txt.llmz").write_bytes(single[0])
    code = main(["decompress", "--ray", "-v", "--workers", "1", "--model", str(llama_dir), "-o",
                 str(tmp_path / "out.txt"), str(tmp_path / "in.txt.llmz")])
    assert code == 0 and (tmp_path / "out.txt").read_bytes() == text
    assert "in.txt.llmz" in capsys.readouterr().err
    assert main(["decompress", "--workers", "2", str(tmp_path / "in.txt.llmz")]) == 2  # --workers needs --ray


def _corpus(folder: Path, alice: bytes) -> list[str]:
    """Five documents: three in a JSONL file (one non-ASCII), two in a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = alice.decode()
    docs = [text[:300], text[300:700] + " naïve café", text[700:900], text[1000:1300], text[1300:1500]]
    folder.mkdir()
    with open(folder / "a.jsonl", "w", encoding="utf-8") as f:
        for d in docs[:3]:
            f.write(json.dumps({"id": len(d), "text": d}) + "\n\n")
    pq.write_table(pa.table({"text": docs[3:], "n": [1, 2]}), folder / "b.parquet")
    return docs


def test_cli_bench_ray_rows_and_rerun(tmp_path, llama_dir, llama, alice, ray_session, capsys):
    pytest.importorskip("pyarrow")
    docs = _corpus(tmp_path / "corpus", alice)
    rows = tmp_path / "rows.jsonl"
    args = ["bench", "--ray", str(tmp_path / "corpus"), "--jsonl", str(rows), "--text-field", "text", "-m",
            str(llama_dir), "--context", str(CONTEXT), "--workers", "1", "--repeats", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 rows were there, 30 written" in out and "bpb" in out and "IC real" in out
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    llm = [r for r in written if r["kind"] == "llmzip"]
    assert [(Path(r["file"]).name, r["sample"]) for r in llm] == [("a.jsonl", 0), ("a.jsonl", 1), ("a.jsonl", 2),
                                                                  ("b.parquet", 0), ("b.parquet", 1)]
    assert [r["original_bytes"] for r in llm] == [len(d.encode()) for d in docs]
    assert all(r["round_trip_verified"] for r in llm)
    # Each document coded alone gives exactly the file a single process writes for it.
    codec = Codec(llama, context=CONTEXT)
    assert [r["compressed_bytes"] for r in llm] == [len(codec.compress(d.encode())) for d in docs]
    # The pooled line: total bits over total bytes, over every row.
    bpb = 8 * sum(r["compressed_bytes"] for r in llm) / sum(r["original_bytes"] for r in llm)
    assert f"{bpb:.4f}" in out
    # A rerun finds every row done: no worker starts, nothing is written, the summary is the same.
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "30 rows were there, 0 written" in again and f"{bpb:.4f}" in again
    assert len(rows.read_text().splitlines()) == 30


def test_missing_extra_is_one_usage_line(tmp_path, monkeypatch, capsys):
    """Without Ray installed, --ray is a usage error (exit 2) that names the extra, never a traceback."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    src = tmp_path / "in.txt"
    src.write_bytes(b"hello")
    for argv in (["compress", "--ray", str(src)], ["decompress", "--ray", "auto", str(src) + ".llmz"],
                 ["bench", "--ray", str(src), "--jsonl", str(tmp_path / "r.jsonl")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("llmzip: ") and "pip install 'llmzip[ray]'" in err[0], err


def test_ray_value_is_an_address_or_the_first_input():
    """`--ray` takes an optional address, so argparse gives it the input that follows: llmzip
    tells addresses from files."""
    from llmzip.distributed import is_address

    for text in ("auto", "local", "10.0.0.5:6379", "head-node:6379", "ray://head:10001", "[::1]:6379"):
        assert is_address(text), text
    for text in ("big.log", "corpus/", "notes.txt.llmz", "-", "/data/x:y"):
        assert not is_address(text), text
    # a file taken for the address goes back in front of the inputs, and Ray starts here
    from llmzip.distributed import ray_address

    inputs = ["b.txt"]
    assert ray_address("a.txt", inputs) == "local" and inputs == ["a.txt", "b.txt"]
    assert ray_address("auto", inputs) == "auto" and ray_address(None, inputs) is None and len(inputs) == 2
