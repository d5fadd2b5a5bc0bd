"""Large inputs, standard streams, interruptions and a hostile environment.

* Memory is bounded: peak RSS of compressing and decompressing 2.2 MB and 12 MB (3 and 12 blocks
  of 1 MiB), each in a fresh process, differs by a few MB at most; the streaming API reads and writes a
  block at a time.
* Standard input to standard output works both ways for multi-block data, through the real CLI.
* Ctrl-C (SIGINT), SIGTERM and SIGKILL during compress or decompress leave no output file, and the
  input untouched.
* Existing outputs need -f; a directory, a path under a file, a read error, a model that cannot
  load, a missing model and a full disk each give one line and exit code 1, with no output left.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmzip import Codec
from llmzip.cli import main

CLI = [sys.executable, "-m", "llmzip.cli"]
MiB = 1 << 20


def _env() -> dict:
    # Read at call time: conftest sets LLMZIP_CACHE during the session.
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def make_data(size: int, seed: int = 0) -> bytes:
    """Mostly binary (it goes to the side channel, so the model has little to do), some text.

    Each 64 KiB unit: a 4 KiB random pattern repeated (LZMA is quick on it), 8 KiB of random bytes,
    and every fourth unit one line of text for the model.
    """
    rng = random.Random(seed)
    patterns = [rng.randbytes(4096) for _ in range(4)]
    line = b"The quick brown fox jumps over the lazy dog; Alice follows the white rabbit.\n"
    out = bytearray()
    unit = 0
    while len(out) < size:
        out += patterns[unit % 4] * 14 + rng.randbytes(8 << 10)
        if unit % 4 == 0:
            out += line
        unit += 1
    return bytes(out[:size])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(err: str | bytes) -> str:
    text = err.decode() if isinstance(err, bytes) else err
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text and "internal error" not in text, text
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Memory: peak RSS does not grow with the input


_MEASURE = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from llmzip import Codec, load_model
from llmzip.portable import PORTABLE_ENGINE
direction, model, src, dst = sys.argv[1:5]


def peak_kb():
    # Linux: the peak RSS of the process (what ru_maxrss reports), but restartable (clear_refs);
    # ru_maxrss also keeps the peak of threads that have exited, which no reset clears.
    try:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


codec = Codec(load_model(model, device="cpu"), context=64, batch=4)
if codec.engine == PORTABLE_ENGINE:
    codec.portable  # the integer model and its fused loops (numba's runtime): loaded once, like the model
try:  # restart the peak here, so that loading's own peak cannot hide the coding's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
loaded = peak_kb()
with open(src, "rb") as source, open(dst, "wb") as target:
    run = codec.compress_stream if direction == "compress" else codec.decompress_stream
    stats = run(source, target)
print(json.dumps({"loaded_kb": loaded, "peak_kb": peak_kb(), "blocks": stats.blocks, "tokens": stats.tokens}))
"""


def _measure_all(jobs: list[list[str]]) -> list[dict]:
    """Run measurement children concurrently (each is its own process, so peaks do not mix)."""
    procs = [subprocess.Popen([sys.executable, "-c", _MEASURE, *job], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=_env()) for job in jobs]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def test_peak_memory_does_not_grow_with_input_size(llama_dir, tmp_path):
    sizes = {"small": 2_200_000, "large": 12_000_000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(make_data(size))
    names = list(sizes)
    comp = _measure_all([["compress", str(llama_dir), str(tmp_path / n), str(tmp_path / f"{n}.llmz")]
                         for n in names])
    dec = _measure_all([["decompress", str(llama_dir), str(tmp_path / f"{n}.llmz"), str(tmp_path / f"{n}.out")]
                        for n in names])
    for n in names:
        assert (tmp_path / f"{n}.out").read_bytes() == (tmp_path / n).read_bytes()
    report = {f"{d} {n}": f"peak {r['peak_kb'] / 1024:.1f} MiB (model loaded {r['loaded_kb'] / 1024:.1f} MiB, "
                          f"{r['blocks']} blocks)"
              for d, results in (("compress", comp), ("decompress", dec)) for n, r in zip(names, results)}
    print(json.dumps(report, indent=1))
    for results in (comp, dec):
        small, large = results
        assert small["blocks"] == 3 and large["blocks"] == 12
        # 9.8 MB more input: holding the input (or the output) whole would add at least that much,
        # and two or three times that with copies. Measured: 0.4 to 2 MiB more.
        assert large["peak_kb"] - small["peak_kb"] < 6 * 1024, report
    # What coding adds over the loaded model. Measured: ~90 MiB compressing (LZMA's preset-9e
    # encoder on a 1 MiB block is most of it), ~13 MiB decompressing (a few copies of a block).
    assert all(r["peak_kb"] - r["loaded_kb"] < 160 * 1024 for r in comp), report
    assert all(r["peak_kb"] - r["loaded_kb"] < 48 * 1024 for r in dec), report


class _Source(io.RawIOBase):
    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.sizes: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.sizes.append(n)
        return self._data.read(n)


class _Target(io.RawIOBase):
    def __init__(self):
        self.sizes: list[int] = []
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sizes.append(len(b))
        self.data += b
        return len(b)


def test_streaming_reads_and_writes_a_block_at_a_time(llama):
    codec = Codec(llama, context=64, batch=4)
    data = make_data(600_000, seed=3)
    block = 64 << 10
    source, packed = _Source(data), _Target()
    stats = codec.compress_stream(source, packed, block_bytes=block)
    assert stats.blocks >= 9
    assert all(0 < n <= block for n in source.sizes)  # never read(-1), never more than a block
    assert len(packed.sizes) >= stats.blocks  # written as each block is done
    source, out = _Source(bytes(packed.data)), _Target()
    codec.decompress_stream(source, out)
    assert bytes(out.data) == data
    assert all(0 <= n < len(packed.data) // 4 for n in source.sizes)  # field by field, block by block
    assert len(out.sizes) == stats.blocks and max(out.sizes) <= block


# ---------------------------------------------------------------------------------------------
# Standard input and output


def test_stdin_to_stdout_both_ways_for_large_data(llama_dir, tmp_path):
    data = make_data(2 * MiB + 12345, seed=1)  # three blocks
    comp = subprocess.run(CLI + ["compress", "--model", str(llama_dir), "--context", "64"], input=data,
                          capture_output=True, env=_env(), timeout=600)
    assert comp.returncode == 0, comp.stderr.decode()
    assert comp.stdout.startswith(b"\x89LLZ") and b"bits/byte" in comp.stderr
    dec = subprocess.run(CLI + ["decompress", "--model", str(llama_dir), "-"], input=comp.stdout,
                         capture_output=True, env=_env(), timeout=600)
    assert dec.returncode == 0, dec.stderr.decode()
    assert dec.stdout == data and dec.stderr == b""
    assert not list(tmp_path.iterdir())  # nothing written beside


# ---------------------------------------------------------------------------------------------
# Interruptions


def _wait_for_temp(folder: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        temps = list(folder.glob(".*.tmp"))
        if temps:
            return temps[0]
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be interrupted: {proc.communicate()[1].decode()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no temporary output file appeared")


def _default_sigint() -> None:
    # A shell that starts the test run in the background (`pytest &`) has it ignore SIGINT, and a
    # child inherits that: Python then installs no KeyboardInterrupt handler. The user's terminal
    # is the case tested here, so the child starts with SIGINT's default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(cmd: list[str], folder: Path, sig: int) -> tuple[int, bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                            preexec_fn=_default_sigint)
    try:
        _wait_for_temp(folder, proc)
        time.sleep(0.3)  # well inside the coding loop
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def slow_text(alice) -> bytes:
    return alice * 2  # 12 KB of text: seconds of model work each way at the CLI's defaults


@pytest.fixture(scope="module")
def slow_packed(llama, slow_text) -> bytes:
    return Codec(llama, context=512, batch=4, threads=1).compress(slow_text)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_compress_leaves_nothing(llama_dir, tmp_path, slow_text, sig):
    src = tmp_path / "book.txt"
    src.write_bytes(slow_text)
    before, mtime = _sha(src), src.stat().st_mtime_ns
    code, err = _interrupt(CLI + ["compress", "--model", str(llama_dir), str(src)], tmp_path, sig)
    assert code == 130
    assert "interrupted" in _one_line(err)
    assert _leftovers(tmp_path, {"book.txt"}) == []  # no book.txt.llmz, no temporary file
    assert _sha(src) == before and src.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_decompress_leaves_nothing(llama_dir, tmp_path, slow_packed, sig):
    src = tmp_path / "book.txt.llmz"
    src.write_bytes(slow_packed)
    before = _sha(src)
    code, err = _interrupt(CLI + ["decompress", "--model", str(llama_dir), str(src)], tmp_path, sig)
    assert code == 130
    assert "interrupted" in _one_line(err)
    assert _leftovers(tmp_path, {"book.txt.llmz"}) == []
    assert _sha(src) == before


def test_killed_compress_never_leaves_a_partial_output(llama_dir, tmp_path, slow_text):
    """SIGKILL cannot be caught: the hidden temporary file stays, the output name never appears."""
    src = tmp_path / "book.txt"
    src.write_bytes(slow_text)
    before = _sha(src)
    code, _ = _interrupt(CLI + ["compress", "--model", str(llama_dir), str(src)], tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (tmp_path / "book.txt.llmz").exists() and _sha(src) == before
    assert all(name.startswith(".book.txt.llmz.") and name.endswith(".tmp")
               for name in _leftovers(tmp_path, {"book.txt"}))


# ---------------------------------------------------------------------------------------------
# Refusals and a hostile environment, in-process through the CLI's main


def _args(model_dir, *rest):
    return ["-q", "--model", str(model_dir), *rest]


@pytest.fixture()
def small_pair(tmp_path, llama_dir, alice):
    src = tmp_path / "note.txt"
    src.write_bytes(alice[:200])
    assert main(["compress", *_args(llama_dir, "-k", "--context", "32", str(src))]) == 0
    return src, tmp_path / "note.txt.llmz"


def test_decompress_needs_force_and_refuses_the_same_path(llama_dir, small_pair, capsys, alice):
    src, packed = small_pair
    src.write_bytes(b"precious")
    capsys.readouterr()
    assert main(["decompress", *_args(llama_dir, str(packed))]) == 1
    assert "already exists; use -f" in _one_line(capsys.readouterr().err)
    assert src.read_bytes() == b"precious" and packed.exists()
    assert main(["decompress", *_args(llama_dir, "-f", "-o", str(packed), str(packed))]) == 1
    assert "same file" in _one_line(capsys.readouterr().err)
    link = packed.with_name("link.llmz")
    link.symlink_to(packed)
    assert main(["decompress", *_args(llama_dir, "-f", "-o", str(link), str(packed))]) == 1
    assert "same file" in _one_line(capsys.readouterr().err)
    assert main(["decompress", *_args(llama_dir, "-f", "-k", str(packed))]) == 0
    assert src.read_bytes() == alice[:200]


def test_unreadable_inputs(llama_dir, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [(str(folder), "is a directory"), (str(plain / "below"), "Not a directory"),
             (str(tmp_path / "missing"), "No such file")]
    if os.geteuid() != 0:  # root reads a file whatever its mode
        locked = tmp_path / "locked"
        locked.write_bytes(b"secret")
        locked.chmod(0)
        cases.append((str(locked), "Permission denied"))
    for name, message in cases:
        capsys.readouterr()
        assert main(["compress", *_args(llama_dir, "-c", name)]) == 1
        assert message in _one_line(capsys.readouterr().err)
    if Path("/proc/self/mem").exists():  # opens, then every read fails with EIO
        out = tmp_path / "out.llmz"
        assert main(["compress", *_args(llama_dir, "-o", str(out), "/proc/self/mem")]) == 1
        assert "Input/output error" in _one_line(capsys.readouterr().err)
        assert _leftovers(tmp_path, {"plain", "folder", "locked"}) == []


def _broken_models(llama_dir: Path, root: Path) -> dict[str, tuple[Path, str]]:
    import shutil

    def copy(name: str) -> Path:
        target = root / name
        shutil.copytree(llama_dir, target)
        return target

    garbage_config = copy("garbage-config")
    (garbage_config / "config.json").write_text("{not json")
    no_weights = copy("no-weights")
    (no_weights / "model.safetensors").unlink()
    bad_tokenizer = copy("bad-tokenizer")
    (bad_tokenizer / "tokenizer.json").write_text("nope")
    bad_shape = copy("bad-shape")
    (bad_shape / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": -5}))
    return {
        "missing": (root / "no-such-model", "model not found"),
        "garbage config": (garbage_config, "cannot load"),
        "no weights": (no_weights, "no .safetensors"),
        "bad tokenizer": (bad_tokenizer, "cannot load"),
        "bad shape": (bad_shape, "cannot load"),
    }


@pytest.mark.parametrize("direction", ["compress", "decompress"])
def test_models_that_cannot_load(llama_dir, tmp_path, small_pair, capsys, direction):
    src, packed = small_pair
    models = tmp_path / "models"
    models.mkdir()
    target = packed if direction == "decompress" else src
    for name, (model, message) in _broken_models(llama_dir, models).items():
        capsys.readouterr()
        assert main([direction, "-q", "--model", str(model), "-f", "-o", str(tmp_path / "out"), str(target)]) == 1
        assert message in _one_line(capsys.readouterr().err), name
        assert not (tmp_path / "out").exists() and src.exists() and packed.exists()


def test_truncated_weights_are_a_model_error(llama_dir, tmp_path, small_pair, capsys):
    import shutil

    src, _ = small_pair
    model = tmp_path / "truncated"
    shutil.copytree(llama_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["compress", "-q", "--model", str(model), "-c", str(src)]) == 1
    assert "cannot load" in _one_line(capsys.readouterr().err)


@contextlib.contextmanager
def _full_disk(folder: Path, monkeypatch, how: str):
    """A 64 KiB tmpfs (needs root on Linux), or output files whose writes fail past 64 KiB."""
    folder.mkdir()
    mounted = False
    if how == "tmpfs":
        if os.geteuid() != 0 or not sys.platform.startswith("linux"):
            pytest.skip("mounting a tmpfs needs root on Linux")
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
        if mount.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
        mounted = True
    else:
        real_fdopen = os.fdopen

        class Full(io.RawIOBase):
            def __init__(self, raw):
                self.raw = raw
                self.written = 0

            def writable(self):
                return True

            def write(self, b):
                if self.written + len(b) > 64 << 10:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self.written += len(b)
                return self.raw.write(b)

            def fileno(self):
                return self.raw.fileno()

            def close(self):
                self.raw.close()
                super().close()

        def fdopen(fd, mode="r", *args, **kwargs):
            f = real_fdopen(fd, mode, *args, **kwargs)
            return Full(f) if "w" in mode and Path(os.readlink(f"/proc/self/fd/{fd}")).parent == folder.resolve() else f

        monkeypatch.setattr(os, "fdopen", fdopen)
    try:
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux")
@pytest.mark.parametrize("how", ["tmpfs", "failing writes"])
def test_full_disk(llama_dir, tmp_path, capsys, monkeypatch, how):
    data = random.Random(2).randbytes(200_000)  # stays 200 KB compressed: more than the 64 KiB disk
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    packed = tmp_path / "data.bin.llmz"
    assert main(["compress", *_args(llama_dir, "-k", str(src))]) == 0
    full = tmp_path / "full"
    with _full_disk(full, monkeypatch, how):
        for argv in (["compress", *_args(llama_dir, "-k", "-o", str(full / "data.bin.llmz"), str(src))],
                     ["decompress", *_args(llama_dir, "-k", "-o", str(full / "data.bin"), str(packed))]):
            capsys.readouterr()
            assert main(argv) == 1
            assert "No space left on device" in _one_line(capsys.readouterr().err)
            assert list(full.iterdir()) == []  # neither the output nor its temporary file
    assert src.read_bytes() == data and packed.exists()
