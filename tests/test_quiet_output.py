"""Nothing but llmzip's own lines on stderr, on the libraries pip resolves today.

The real command line runs in a subprocess, as a user runs it, so that whatever a dependency prints
(warnings, log lines, progress bars) shows up here: `-q` prints nothing on success, and an error is
exactly one line. transformers 5.24's FutureWarning for `past_key_values` went unnoticed because no
test looked at stderr.
"""
from __future__ import annotations

import importlib.metadata
import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from conftest import called_through_llmzip

_SCRIPT = Path(sys.executable).with_name("llmzip")
# The installed console script where there is one (as users run it), else the module.
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "llmzip.cli"]


def _env(**extra: str) -> dict[str, str]:
    # One thread each: the suite shares its machine. LLMZIP_CACHE comes from conftest (a temp folder).
    return dict(os.environ, OMP_NUM_THREADS="1", **extra)


def _run(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, env=_env(), cwd=cwd, timeout=600)


def _one_error_line(proc: subprocess.CompletedProcess, *expected: str) -> str:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmzip: "), err
    for text in expected:
        assert text in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, gpt2_dir, llama_dir, alice) -> Path:
    """A text, its .llmz, the .llmz damaged in the coded stream and in the header, a broken model.

    The file is coded with the tiny GPT-2, which every engine choice leaves to transformers' own
    forward: the path whose deprecated argument printed on every run."""
    work = tmp_path_factory.mktemp("quiet")
    (work / "text.txt").write_bytes(alice[:400])
    proc = _run("compress", "-q", "-k", "--model", str(gpt2_dir), "--context", "64", "text.txt", cwd=work)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    blob = (work / "text.txt.llmz").read_bytes()
    stream = bytearray(blob)
    stream[-40] ^= 0x10  # inside the coded stream
    (work / "stream.llmz").write_bytes(bytes(stream))
    header = bytearray(blob)
    header[12] ^= 0xFF  # inside the header
    (work / "header.llmz").write_bytes(bytes(header))
    broken = work / "broken-model"
    broken.mkdir()
    for f in llama_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return work


def test_success_prints_nothing(workdir, gpt2_dir, llama_dir, alice):
    """compress (in the fixture), decompress, info and bench, each with -q where it has one."""
    model = ["--model", str(gpt2_dir)]
    dec = _run("decompress", "-q", "-c", *model, "text.txt.llmz", cwd=workdir)
    assert (dec.returncode, dec.stderr, dec.stdout) == (0, b"", alice[:400])
    info = _run("info", "text.txt.llmz", cwd=workdir)
    assert (info.returncode, info.stderr) == (0, b"") and b"windows of 64 tokens" in info.stdout
    bench = _run("bench", "-q", *model, "--context", "64", "--repeats", "1", "text.txt", cwd=workdir)
    assert (bench.returncode, bench.stderr, bench.stdout) == (0, b"", b"")
    # Standard input to standard output, as in a pipe; the Llama model with the default engine.
    comp = _run("compress", "-q", "--model", str(llama_dir), "--context", "64", stdin=alice[:200])
    assert (comp.returncode, comp.stderr) == (0, b"") and comp.stdout.startswith(b"\x89LLZ")


def test_errors_are_one_line(workdir, gpt2_dir):
    """A damaged model file for the commands that load one, damaged .llmz files for those that read one."""
    broken = ["--model", str(workdir / "broken-model")]
    _one_error_line(_run("compress", "-q", "-c", *broken, "text.txt", cwd=workdir), "text.txt", "cannot load model")
    _one_error_line(_run("bench", "-q", *broken, "text.txt", cwd=workdir), "cannot load model")
    model = ["--model", str(gpt2_dir)]
    _one_error_line(_run("decompress", "-q", "-c", *model, "stream.llmz", cwd=workdir), "stream.llmz", "corrupted")
    _one_error_line(_run("decompress", "-q", "-c", *model, "header.llmz", cwd=workdir), "header.llmz", "corrupted")
    _one_error_line(_run("info", "header.llmz", cwd=workdir), "header.llmz", "corrupted")


def test_library_prints_nothing(llama_dir, gpt2_dir, alice):
    """The library under transformers' default logging (its own stderr handler at WARNING): both
    tiny architectures, loading and a round trip, the Llama one on its default engine and on
    transformers'. The library never prints, nor lets its libraries."""
    script = textwrap.dedent(f"""
        import llmzip
        data = {alice[:300]!r}
        for folder, engine in (({str(llama_dir)!r}, "auto"), ({str(llama_dir)!r}, "transformers"),
                               ({str(gpt2_dir)!r}, "auto")):
            codec = llmzip.Codec(folder, context=64, batch=2, engine=engine)
            assert codec.decompress(codec.compress(data)) == data
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=_env(), timeout=600)
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode(errors="replace")


def test_version_names_the_libraries():
    proc = _run("--version")
    assert (proc.returncode, proc.stderr) == (0, b"")
    expected = [f"llmzip {importlib.metadata.version('llmzip')}"] + [
        f"{name} {importlib.metadata.version(name)}" for name in ("torch", "transformers", "constriction")]
    assert proc.stdout.decode().splitlines() == expected


class _WarningSource(io.BytesIO):
    """Input that raises a FutureWarning attributed to this test module, as a library's would be
    attributed to its own frames, while llmzip's codec reads it."""

    def read(self, n: int = -1) -> bytes:
        warnings.warn("old API", FutureWarning, stacklevel=1)
        return super().read(n)


def test_deprecation_through_llmzip_is_an_error(llama, alice):
    from llmzip import Codec

    assert not called_through_llmzip()  # a test's own frames are not llmzip's
    with pytest.raises(FutureWarning, match="raised while llmzip was calling it"):
        Codec(llama, context=32).compress_stream(_WarningSource(alice[:100]), io.BytesIO())


@pytest.mark.slow
def test_default_model_cli_prints_nothing(tmp_path, alice):
    """The embedded model end to end in a fresh cache: the GGUF conversion, compress, decompress."""
    text = tmp_path / "text.txt"
    text.write_bytes(alice[:200])
    env = _env(LLMZIP_CACHE=str(tmp_path / "cache"))
    comp = subprocess.run([*CLI, "compress", "-q", "-k", str(text)], capture_output=True, env=env, timeout=900)
    assert (comp.returncode, comp.stderr) == (0, b""), comp.stderr.decode(errors="replace")
    dec = subprocess.run([*CLI, "decompress", "-q", "-c", f"{text}.llmz"], capture_output=True, env=env, timeout=900)
    assert (dec.returncode, dec.stderr, dec.stdout) == (0, b"", alice[:200]), dec.stderr.decode(errors="replace")
